"""SQS bridge: drains S3 notifications into the durable bronze landing log."""
