"""procscope's Textual UI (issue 4): widgets that render the process cache."""
