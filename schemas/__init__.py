"""Pandera models, one per dataset kind written by the pipeline.

Checks carry their message as `error=`, not `name=`: pandera 0.35 hands a check's `name` to the first model built from
it and the function's name to every later one (a subclass, or the parent built after it), so a refusal would name the
check differently depending on which schema a process happened to build first.
"""
