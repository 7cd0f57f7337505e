package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"tandem/shared/config"
)

// PostgresURL is the configured connection URL: postgres_url, or the one read from the
// postgres_secret_arn secret. The tandem command connects as the handlers do.
func PostgresURL(ctx context.Context, awsCfg aws.Config, cfg *config.Config) (string, error) {
	if cfg.PostgresURL != "" {
		return cfg.PostgresURL, nil
	}
	return postgresURLFromSecret(ctx, awsCfg, cfg.PostgresSecretARN)
}

// postgresURLFromSecret reads the database connection from Secrets Manager: either a URL
// string, or the JSON secret RDS manages (host, port, username, password, dbname).
func postgresURLFromSecret(ctx context.Context, cfg aws.Config, arn string) (string, error) {
	out, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &arn})
	if err != nil {
		return "", fmt.Errorf("reading database secret %s: %w", arn, err)
	}
	value := aws.ToString(out.SecretString)
	if strings.HasPrefix(value, "postgres://") || strings.HasPrefix(value, "postgresql://") {
		return value, nil
	}
	var s struct {
		Host     string          `json:"host"`
		Port     json.RawMessage `json:"port"`
		Username string          `json:"username"`
		Password string          `json:"password"`
		DBName   string          `json:"dbname"`
		URL      string          `json:"url"`
	}
	if err := json.Unmarshal([]byte(value), &s); err != nil {
		return "", fmt.Errorf("database secret %s is neither a postgres:// URL nor JSON with host, port, username, password, dbname: %w", arn, err)
	}
	if s.URL != "" {
		return s.URL, nil
	}
	if s.Host == "" || s.Username == "" {
		return "", fmt.Errorf("database secret %s lacks host or username", arn)
	}
	port := strings.Trim(string(s.Port), `"`)
	if _, err := strconv.Atoi(port); err != nil {
		port = "5432"
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(s.Username, s.Password), Host: s.Host + ":" + port, Path: "/" + s.DBName}
	return u.String(), nil
}
