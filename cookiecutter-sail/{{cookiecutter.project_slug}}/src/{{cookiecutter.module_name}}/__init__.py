"""Project code of {{ cookiecutter.project_slug }}; `transform` holds the Shared Transformation
Layer."""
