"""Custom MAX ops of the Replit Code graph; MAX builds this directory as one package."""
