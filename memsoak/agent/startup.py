"""What the interpreter had before the agent was imported, which is not the app's doing."""

import gc

# Objects already frozen belong to the interpreter, not to an app that called gc.freeze():
# CPython 3.12.1 starts with a few hundred in its permanent generation (3.11 and 3.13 with none).
FROZEN_AT_IMPORT = gc.get_freeze_count()
