# Example executors for the demo live here. django_rexecutor discovers every installed app's
# `jobs.py` (as the admin does with `admin.py`), so defining an Executor subclass in this module
# is enough to register it.
