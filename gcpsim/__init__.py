"""gcpsim: a local, persistent simulator of the Google Cloud REST APIs the runbook uses.

Start it with ``python -m gcpsim`` or, from Python, with
:func:`gcpsim.launcher.start_simulator`.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
