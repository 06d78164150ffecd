"""Where events go: files, Event Hubs, lakehouse tables."""
