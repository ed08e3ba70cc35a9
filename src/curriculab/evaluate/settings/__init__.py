"""What the evaluate steps declare without torch: their settings schemas and checks, and the VAE task's
declaration. Checking a params file and rendering a table read only these; the evaluate step (and a VAE run)
imports the implementation.

Each module here holds the settings of the module of the same name in `curriculab.evaluate`, which imports them
from here. A task lookup imports every module of this package (engine/task_settings.py).
"""
