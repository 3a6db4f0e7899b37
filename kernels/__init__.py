"""titans_ts.kernels: the neural-memory op and its backends.

Shipped inside the wheel as ``titans_ts.kernels`` (the repository keeps it at the top level as
``kernels/``; the bare name ``kernels`` belongs to another PyPI package). Each op is a folder with a
plain PyTorch reference beside the fast implementations that must match it.
"""
