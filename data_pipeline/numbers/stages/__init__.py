"""The cleaning and transform stages as plain functions over Arrow data: chunks on a pool."""
