"""Where tagged posts go."""
