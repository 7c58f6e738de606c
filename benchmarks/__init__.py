"""Side-by-side speed benchmarks of nnlab against Keras 3 (JAX), PyTorch and scikit-learn.

Run ``python -m benchmarks.run`` (``--quick`` for a short pass); see benchmarks/README.md.
"""
