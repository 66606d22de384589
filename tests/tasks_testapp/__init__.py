"""An installed app (in the django.tasks tests only) holding tasks the worker finds by itself:
``tasks.py`` is imported at start-up; ``side_effect.py`` is a module no payload may import."""
