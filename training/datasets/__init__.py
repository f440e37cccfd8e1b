"""Adapters that write public data sets as ImageFolders for ``semedge train``.

Data is fetched by the data set's own package at run time and never committed.
"""
