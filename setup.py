"""The one compiled part: a vectorized exp for AVX2 CPUs (src/crossent/_fastexp.c).

Optional: where no C compiler exists the install goes on without it, and the engine uses
NumPy's exp (crossent/_exp.py chooses). Everything else is configured in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "crossent._fastexp",
            sources=["src/crossent/_fastexp.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
