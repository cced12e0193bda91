"""The streaming job: the `silverline stream` command, its query and each micro-batch's steps."""
