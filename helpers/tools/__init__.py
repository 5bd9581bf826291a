"""Commands around the notebooks: the walkthrough runner, JupyterLab, learners' copies. May import anything."""
