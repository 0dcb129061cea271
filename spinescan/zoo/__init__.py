"""The model zoo: what a model is (spec), the plugin hooks, the registry that finds plugins, and the
backbones specs build on.
"""
