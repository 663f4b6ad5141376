"""corpusmill.train: a lean trainer that reads dataset versions from the store.

    from corpusmill.train import TrainConfig, train
    record = train(TrainConfig(dataset="tickets@v1", model="path/or/hub-id", task="classification"))

Importing this package loads no torch; :func:`train` imports it when called.
"""

from corpusmill.train.config import TrainConfig, build_config


def train(config: TrainConfig, on_eval=None) -> dict:
    """Run ``corpusmill train`` with a config; returns the run record written to run.json."""
    from corpusmill.train.run import train as _train

    return _train(config, on_eval=on_eval)


__all__ = ["TrainConfig", "build_config", "train"]
