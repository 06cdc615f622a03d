"""Other libraries behind xai's result types: ``xai.integrations.shap`` and
``xai.integrations.captum``. Each imports its library on first use only."""
