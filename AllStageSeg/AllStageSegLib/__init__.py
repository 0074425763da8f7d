"""Plain-Python helpers of the AllStageSeg Slicer module (no qt, ctk or slicer.ScriptedLoadableModule).

MRML functions take the scene as an argument, so they run in Slicer and on the ``slicer-core`` wheel alike.
"""
