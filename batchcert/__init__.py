"""batchcert: bulk certificate changes for Tencent Cloud GAAP listener domains."""

__version__ = "0.1.0"
