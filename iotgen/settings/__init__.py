"""Settings: Config (every parameter, its default and allowed values), catalogs, the event schema, Databricks facts.
Imports only base.
"""
