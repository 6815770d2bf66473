"""scheduler: choosing hosts for servers."""
