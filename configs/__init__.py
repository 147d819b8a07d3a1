"""Config files (`get_config()` each). Installed with the package so `configs/tiny.py` resolves
from any working directory."""
