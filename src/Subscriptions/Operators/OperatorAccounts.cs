using System.Security.Cryptography;
using Dapper;
using Microsoft.AspNetCore.Identity;
using Npgsql;

namespace Subscriptions.Operators;

internal sealed record OperatorAccount(long Id, string Email, Guid PasswordStamp, bool MustChangePassword = false);

/// <summary>The operators' accounts: created and reset by <c>admin add</c>, checked at sign-in.</summary>
internal sealed class OperatorAccounts(NpgsqlDataSource dataSource, TimeProvider time)
{
    public const int MinPasswordLength = 12;

    /// <summary>The longest password sign-in hashes (a longer one is refused before any hashing, so it can never be used).</summary>
    public const int MaxPasswordLength = 1024;

    // The hasher only uses its type argument to pass the user to overridable methods; the default ignores it.
    private static readonly PasswordHasher<OperatorAccount> Hasher = new();

    public static string Normalize(string email) => email.Trim().ToLowerInvariant();

    /// <summary>A random password of 20 characters from an alphabet without look-alikes (about 115 bits).</summary>
    public static string GeneratePassword() =>
        RandomNumberGenerator.GetString("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789", 20);

    /// <summary>
    /// Creates the account, or sets a new password (and a new stamp, ending its sessions); true when it was new. A
    /// <paramref name="oneTime"/> password (generated and printed) lets its operator in only to choose their own.
    /// </summary>
    public async Task<bool> AddOrResetAsync(string email, string password, CancellationToken cancellationToken, bool oneTime = false)
    {
        const string sql = """
            INSERT INTO operators (email, password_hash, password_stamp, created_at, password_set_at, must_change_password)
            VALUES (@email, @hash, @stamp, @now, @now, @oneTime)
            ON CONFLICT (email) DO UPDATE SET password_hash = @hash, password_stamp = @stamp, password_set_at = @now, must_change_password = @oneTime
            RETURNING (xmax = 0)
            """;
        var account = new OperatorAccount(0, Normalize(email), Guid.NewGuid());
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<bool>(new CommandDefinition(sql,
            new { email = account.Email, hash = Hasher.HashPassword(account, password), stamp = account.PasswordStamp, now = time.GetUtcNow(), oneTime },
            cancellationToken: cancellationToken));
    }

    /// <summary>The operator's own new password, in place of a one-time one: a new stamp, which the caller's new session carries.</summary>
    public async Task<OperatorAccount> ChangePasswordAsync(long id, string password, CancellationToken cancellationToken)
    {
        const string sql = """
            UPDATE operators SET password_hash = @hash, password_stamp = @stamp, password_set_at = @now, must_change_password = false
            WHERE id = @id
            RETURNING email
            """;
        var stamp = Guid.NewGuid();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var email = await connection.ExecuteScalarAsync<string>(new CommandDefinition(sql,
            new { id, hash = Hasher.HashPassword(new OperatorAccount(id, "", stamp), password), stamp, now = time.GetUtcNow() },
            cancellationToken: cancellationToken)) ?? throw new InvalidOperationException($"No operator {id}");
        return new OperatorAccount(id, email, stamp);
    }

    /// <summary>The account when the address and password match; null for an unknown address or a wrong password alike.</summary>
    public async Task<OperatorAccount?> VerifyAsync(string email, string password, CancellationToken cancellationToken)
    {
        const string sql = "SELECT id, email, password_stamp, password_hash, must_change_password FROM operators WHERE email = @email";
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleOrDefaultAsync<(long Id, string Email, Guid Stamp, string Hash, bool MustChange)?>(
            new CommandDefinition(sql, new { email = Normalize(email) }, cancellationToken: cancellationToken));
        if (row is not { } found)
        {
            // Hash anyway, so an unknown address takes as long to refuse as a wrong password.
            Hasher.VerifyHashedPassword(new OperatorAccount(0, "", Guid.Empty), UnknownAccountHash, password);
            return null;
        }
        var account = new OperatorAccount(found.Id, found.Email, found.Stamp, found.MustChange);
        if (Hasher.VerifyHashedPassword(account, found.Hash, password) == PasswordVerificationResult.Failed)
        {
            return null;
        }
        if (found.MustChange)
        {
            // A printed password serves one sign-in: used up here, so that whoever else saw it (a terminal's scrollback, a
            // log of the deployment) cannot use it before the operator has chosen their own. It is replaced by the hash of a
            // password no one knows, which takes as long to refuse as any (an address's refusals must not tell it apart);
            // of two sign-ins at once, only the one that replaces it gets in.
            const string useUp = "UPDATE operators SET password_hash = @Unknowable WHERE id = @Id AND password_hash = @Hash AND must_change_password";
            var unknowable = Hasher.HashPassword(account, GeneratePassword());
            if (await connection.ExecuteAsync(new CommandDefinition(useUp, new { found.Id, found.Hash, Unknowable = unknowable },
                cancellationToken: cancellationToken)) == 0)
            {
                return null;
            }
        }
        return account;
    }

    /// <summary>A new stamp: every session of the account ends, copies of its cookie included.</summary>
    public async Task EndSessionsAsync(long id, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition("UPDATE operators SET password_stamp = @stamp WHERE id = @id",
            new { id, stamp = Guid.NewGuid() }, cancellationToken: cancellationToken));
    }

    /// <summary>Whether a session's stamp is still the account's (the password was not reset since it signed in).</summary>
    public async Task<bool> IsCurrentAsync(long id, Guid stamp, CancellationToken cancellationToken)
    {
        const string sql = "SELECT EXISTS (SELECT 1 FROM operators WHERE id = @id AND password_stamp = @stamp)";
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<bool>(new CommandDefinition(sql, new { id, stamp }, cancellationToken: cancellationToken));
    }

    private static readonly string UnknownAccountHash = Hasher.HashPassword(new OperatorAccount(0, "", Guid.Empty), GeneratePassword());
}
