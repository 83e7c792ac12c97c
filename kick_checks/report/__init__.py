"""What a run reports: the JSON document and Markdown summary, and the terminal section pytest prints."""
