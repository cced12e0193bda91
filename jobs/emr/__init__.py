"""Running silverline on Amazon EMR (on EC2 and Serverless)."""
