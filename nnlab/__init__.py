"""nnlab: how learning rate, batch size and epochs trade off, measured.

Subpackages and modules, one concept each:

- ``nnlab.nn``        the NumPy network library (Keras 3 semantics; imports numpy only)
- ``nnlab.data``      datasets: synthetic 2-D problems, bundled breast cancer, CSV
- ``nnlab.train``     ``train(cfg)``: config -> data + model -> fit, reporting to a sink
- ``nnlab.tracking``  everything MLflow
- ``nnlab.run``       ``python -m nnlab.run``: the Hydra entry point
- ``nnlab.analysis``  MLflow -> tidy pandas frames
- ``nnlab.report``    ``python -m nnlab.report``: seaborn figures + HTML findings
- ``nnlab.provenance`` MLflow's source tags (commit, user, entry point) for a run

The Hydra configs are the checkout's top-level ``conf/``; a wheel carries them as ``nnlab/conf``.
"""

__version__ = "0.1.0"
