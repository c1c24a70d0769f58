"""Run recipes, demo, reports and plots. Nothing below this package imports from it."""
