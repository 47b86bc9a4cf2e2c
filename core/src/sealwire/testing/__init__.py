"""Test support shipped with core: the vector loader and the binding contract suite."""
