"""Product recommendations: the `Recommender` interface and a co-purchase recommender
(docs/templates.md#recommendations)."""
