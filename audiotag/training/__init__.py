"""training: batches, networks, the fastai Learner, one stage of one fold, the baseline."""

import warnings

with warnings.catch_warnings():
    # fastai.layers compiles two activations with torch.jit.script when it is first
    # imported, which torch deprecates: a FutureWarning on every command that loads a
    # model (tag, serve, a worker) that no user can act on. Imported here, once, quietly.
    warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.script`")
    import fastai.layers  # noqa: F401
