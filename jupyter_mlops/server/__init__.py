"""The Jupyter server extension: the REST API the JupyterLab panel speaks, and (when enabled) the scheduler loop."""
