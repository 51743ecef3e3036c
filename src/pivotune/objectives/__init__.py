"""The objective contract (:mod:`pivotune.objectives.base`); each method's loss lives in its package under
:mod:`pivotune.methods`, built by the method's road from its own settings."""
