"""``scalecrafter-video ui``: a local Gradio app to compare Direct-Inf, Attn-SF and ScaleCrafter.

Gradio is an optional extra (``pip install -e ".[ui]"``) and is imported only when the page is
built, so nothing else in the package needs it. :mod:`.app` holds the generation logic (plain
Python, with every call into the library in one adapter section at its top) and the page;
:mod:`.command` the subcommand.
"""
