"""Predictive customer-lifetime value: purchase models, a spend model and predictions.

Typical use (times in weeks, calibration period ending at ``end``)::

    s = summarize_transactions(ids, dates, values, calibration_end=end)
    purchases = fit_bgnbd(s.x, s.t_x, s.T)            # or fit_paretonbd / fit_mbgnbd
    spend = fit_gammagamma(s.x, s.zbar)
    out = predict_customers(purchases, spend, s.x, s.t_x, s.T, s.zbar, months=12)

Fits raise :class:`ModelFitError` (code ``model_fit``) instead of returning numbers the
data cannot support.
"""

from boomerang.analytics.clv.bgnbd import BGNBD, fit_bgnbd
from boomerang.analytics.clv.fitting import FitDiagnostics, FittedModel, ModelFitError
from boomerang.analytics.clv.gammagamma import GammaGamma, fit_gammagamma
from boomerang.analytics.clv.mbgnbd import MBGNBD, fit_mbgnbd
from boomerang.analytics.clv.paretonbd import ParetoNBD, fit_paretonbd
from boomerang.analytics.clv.predict import (
    CustomerPredictions,
    TransactionModel,
    churn_risk,
    customer_lifetime_value,
    discounted_expected_purchases,
    next_order_date,
    predict_customers,
)
from boomerang.analytics.clv.summary import RFMSummary, summarize_transactions

__all__ = [
    "BGNBD",
    "MBGNBD",
    "CustomerPredictions",
    "FitDiagnostics",
    "FittedModel",
    "GammaGamma",
    "ModelFitError",
    "ParetoNBD",
    "RFMSummary",
    "TransactionModel",
    "churn_risk",
    "customer_lifetime_value",
    "discounted_expected_purchases",
    "fit_bgnbd",
    "fit_gammagamma",
    "fit_mbgnbd",
    "fit_paretonbd",
    "next_order_date",
    "predict_customers",
    "summarize_transactions",
]
