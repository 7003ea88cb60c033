"""Training, checking and evaluating `builtin:shapes`, the tiny SD 1.x model that draws coloured shapes."""
