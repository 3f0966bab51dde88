"""batchcert: bulk certificate changes for Tencent Cloud GAAP listener domains."""

#: the one place the version is written (pyproject.toml reads it; CHANGELOG.md says what each one changed)
__version__ = "0.6.5"
