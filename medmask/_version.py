"""The release number, at the bottom of the layers so that any module may name it (files
written by conversions record it) without importing the package root."""

__version__ = "0.5.0"
