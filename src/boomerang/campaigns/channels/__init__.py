"""Delivery channels: SMTP email, Twilio-compatible SMS, push/webhook, and .eml files."""
