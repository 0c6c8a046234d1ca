// Keeps fulcrum_test_support a real library before it has helpers of its own.
