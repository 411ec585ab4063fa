"""procscope's Textual UI: widgets that render the process cache."""
