"""The charts of a run and a sweep (loss curves, a metric against each hyper-parameter) are drawn
by corpusmill's one chart kit, :mod:`corpusmill.report.svg`: the same ticks, legend and palette as
the dataset and evaluation reports. This module names what the trainer uses from it."""

from corpusmill.report.svg import Panel, Series, figure

__all__ = ["Panel", "Series", "figure"]
