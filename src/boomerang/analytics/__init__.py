"""Analytics: statistical models over a store's purchase history."""
