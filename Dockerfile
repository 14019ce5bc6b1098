FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY profiles ./profiles
COPY samples ./samples
RUN pip install --no-cache-dir .
EXPOSE 8080
CMD ["dmp-fhir", "serve", "--load", "samples/"]
