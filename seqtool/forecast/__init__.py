"""Forecasting with a trained model: predict (teacher-forced), rollout and backtest (free
running, one engine), intervals and sample paths, and the metrics against naive forecasts.
It never imports training."""
