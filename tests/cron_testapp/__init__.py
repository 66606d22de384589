"""A tiny app whose executors the cron and pruner tests enqueue, in the test process and in
worker subprocesses (installed by ``tests.settings_cron``)."""
