"""The model repository layout: the python-backend model Triton loads and the config templates."""
