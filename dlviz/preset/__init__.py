"""What a preset can say and what is done to the document: the catalog of names (registry), the schema, edits, sharing, the gallery."""
