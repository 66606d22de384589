"""Periodic work that runs inside workers (cron scheduler, pruner)."""
