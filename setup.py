# The C core is built by cffi in out-of-line API mode; see csrc/build_ffi.py.
from setuptools import setup

setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"])
