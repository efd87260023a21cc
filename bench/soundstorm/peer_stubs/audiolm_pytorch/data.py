"""Stand-in (see __init__.py): imported by soundstorm_pytorch.trainer, unused by the benchmark."""


def get_dataloader(*args, **kwargs):
    raise NotImplementedError("benchmark stub")
